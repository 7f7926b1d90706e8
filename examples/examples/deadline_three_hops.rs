//! A chain of three axum services over real HTTP, each accepting its caller's deadline and
//! passing what is left to the next one. Prints the time left at each hop.
//!
//! `cargo run --example deadline_three_hops`
//!
//! Two calls with a 500 ms deadline at the edge: in the first the last hop answers in
//! 100 ms; in the second it would take 2 s, so it is stopped at its deadline and the chain
//! answers 504 well within the 500 ms.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_bulwark::deadline::{AcceptDeadlineLayer, PropagateDeadlineLayer};
use tower_bulwark::{BoxError, Deadline, HandleRejectionsLayer};

/// Sends `GET /` to `addr`; with `timeout_ms`, as the edge's caller would.
async fn get_status(addr: SocketAddr, timeout_ms: Option<u64>) -> Result<StatusCode, BoxError> {
    let mut request = http::Request::get("/");
    if let Some(ms) = timeout_ms {
        request = request.header("x-request-timeout-ms", ms);
    }
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender
        .send_request(request.body(Empty::<&[u8]>::new())?)
        .await?
        .status())
}

/// A call to the next hop, carrying the time left less a 10 ms margin.
fn call_next(
    addr: SocketAddr,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<StatusCode, BoxError>> + Send>> {
    let propagate = PropagateDeadlineLayer::builder()
        .margin(Duration::from_millis(10))
        .build()
        .expect("valid configuration");
    let client = propagate.layer(service_fn(move |request: http::Request<()>| async move {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let (parts, ()) = request.into_parts();
        let request = http::Request::from_parts(parts, Empty::<&[u8]>::new());
        Ok::<_, BoxError>(sender.send_request(request).await?.status())
    }));
    Box::pin(client.oneshot(http::Request::get("/").body(()).expect("valid request")))
}

/// One hop: prints its time left, then calls `next`, or works for `work_ms` if last.
async fn serve(
    name: &'static str,
    next: Option<SocketAddr>,
    work_ms: Arc<AtomicU64>,
) -> SocketAddr {
    let handler = move || {
        let work_ms = work_ms.clone();
        async move {
            let left = Deadline::current()
                .map(Deadline::remaining)
                .unwrap_or_default();
            println!("  {name}: {} ms left", left.as_millis());
            match next {
                Some(next) => call_next(next).await.unwrap_or(StatusCode::GATEWAY_TIMEOUT),
                None => {
                    let work = Duration::from_millis(work_ms.load(Ordering::Relaxed));
                    tokio::time::sleep(work).await;
                    println!("  {name}: finished its {} ms of work", work.as_millis());
                    StatusCode::OK
                }
            }
        }
    };
    let accept = AcceptDeadlineLayer::builder()
        .max(Duration::from_secs(10))
        .build()
        .expect("valid configuration");
    let app = Router::new().route("/", get(handler)).layer(
        ServiceBuilder::new()
            .layer(HandleRejectionsLayer::new())
            .layer(accept),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let work_ms = Arc::new(AtomicU64::new(100));
    let last = serve("inventory", None, work_ms.clone()).await;
    let middle = serve("orders", Some(last), work_ms.clone()).await;
    let edge = serve("gateway", Some(middle), work_ms.clone()).await;

    for work in [100, 2_000] {
        work_ms.store(work, Ordering::Relaxed);
        println!("call with a 500 ms deadline; the last hop needs {work} ms:");
        let started = tokio::time::Instant::now();
        let status = get_status(edge, Some(500)).await?;
        println!("  -> {status} after {} ms\n", started.elapsed().as_millis());
    }
    Ok(())
}
