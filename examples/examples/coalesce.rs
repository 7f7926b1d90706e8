//! Request coalescing over real HTTP: a stampede of identical GETs against an axum backend
//! that takes 50 ms, sent by a hyper-util client without the layer, then with it.
//!
//! `cargo run --example coalesce`
//!
//! 1. Without the layer: 500 identical `GET /prices/7` at once make 500 upstream calls.
//! 2. With `CoalesceLayer` around the client: the same stampede makes 1 upstream call,
//!    and every caller gets the same answer.
//! 3. Two users (`Authorization: Bearer alice` and `bob`) at once: 2 upstream calls, each
//!    user gets their own answer, never the other's.
//!
//! Exits non-zero if the counts are not these.

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
use tower::{Layer, Service, ServiceExt};
use tower_bulwark::coalesce::{CoalesceEvent, CoalesceEventKind, CoalesceLayer};
use tower_bulwark::BoxError;

const CALLERS: usize = 500;

/// The backend: a price lookup that takes 50 ms; it counts its calls.
async fn price(State(calls): State<Arc<AtomicUsize>>, headers: HeaderMap) -> String {
    let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anyone");
    format!("price of item 7 for {user}: 42 (call {call})")
}

async fn serve() -> Result<(SocketAddr, Arc<AtomicUsize>), BoxError> {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/prices/7", get(price))
        .with_state(calls.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, calls))
}

/// Sends `requests` all at once through clones of `service`; returns the answers' bodies.
async fn stampede<S>(
    service: S,
    requests: Vec<Request<Empty<Bytes>>>,
) -> Result<Vec<String>, BoxError>
where
    S: Service<Request<Empty<Bytes>>> + Clone + Send + 'static,
    S::Response: Into<http::Response<axum::body::Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let callers: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let service = service.clone();
            tokio::spawn(async move {
                let response: http::Response<axum::body::Body> =
                    service.oneshot(request).await.map_err(Into::into)?.into();
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, BoxError>(String::from_utf8_lossy(&body).into_owned())
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for caller in callers {
        bodies.push(caller.await??);
    }
    Ok(bodies)
}

fn requests(uri: &str, users: &[Option<&str>]) -> Vec<Request<Empty<Bytes>>> {
    users
        .iter()
        .map(|user| {
            let mut request = Request::get(uri);
            if let Some(user) = user {
                request = request.header("authorization", format!("Bearer {user}"));
            }
            request.body(Empty::new()).expect("a valid request")
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (addr, calls) = serve().await?;
    let uri = format!("http://{addr}/prices/7");
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let anyone = vec![None; CALLERS];

    // 1. Without the layer.
    let bare = client
        .clone()
        .map_response(|r| r.map(axum::body::Body::new));
    let answers = stampede(bare, requests(&uri, &anyone)).await?;
    let without = calls.swap(0, Ordering::SeqCst);
    println!("without coalescing: {CALLERS} GETs -> {without} upstream calls");

    // 2. With the layer.
    let joined = Arc::new(AtomicUsize::new(0));
    let counted = joined.clone();
    let coalesce = CoalesceLayer::builder()
        .name("prices")
        .on_event(move |event: &CoalesceEvent| {
            if event.kind == CoalesceEventKind::Joined {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()?;
    let coalesced = coalesce
        .layer(client.clone())
        .map_response(|r| r.map(axum::body::Body::new));
    let shared = stampede(coalesced.clone(), requests(&uri, &anyone)).await?;
    let with = calls.swap(0, Ordering::SeqCst);
    println!(
        "with coalescing:    {CALLERS} GETs -> {with} upstream call(s), {} callers joined",
        joined.load(Ordering::Relaxed)
    );
    let joined_stampede = joined.load(Ordering::Relaxed);
    let same = shared.iter().all(|body| *body == shared[0]);
    println!(
        "  every caller got: {:?} ({})",
        shared[0],
        if same { "all the same" } else { "DIFFERENT" }
    );

    // 3. Two users.
    let users: Vec<Option<&str>> = (0..100)
        .map(|i| Some(if i % 2 == 0 { "alice" } else { "bob" }))
        .collect();
    let per_user = stampede(coalesced, requests(&uri, &users)).await?;
    let two = calls.swap(0, Ordering::SeqCst);
    let own = per_user
        .iter()
        .zip(&users)
        .all(|(body, user)| body.contains(&format!("Bearer {}", user.unwrap_or_default())));
    println!("two users:          100 GETs -> {two} upstream calls, each user got their own answer: {own}");

    let ok = answers.len() == CALLERS
        && without == CALLERS
        && with == 1
        && same
        && joined_stampede == CALLERS - 1
        && two == 2
        && own;
    if !ok {
        eprintln!("unexpected counts");
        std::process::exit(1);
    }
    Ok(())
}
