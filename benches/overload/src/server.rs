//! Serving an axum app on loopback over HTTP/1.1 and HTTP/2 (prior knowledge) alike.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// HTTP/2 streams a connection may carry at once. hyper's default (200) would hold the
/// overload back in the client's queue of streams, where no server-side guard can see it;
/// raised, every call the generator sends reaches the server.
pub const MAX_STREAMS: u32 = 100_000;

/// Binds a loopback port and serves `app` on it (on the current runtime) until the runtime
/// shuts down.
pub async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    serve_counting(app, Arc::default()).await
}

/// [`serve`], counting the connections accepted in `accepted`.
pub async fn serve_counting(app: Router, accepted: Arc<AtomicU64>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(accept(listener, app, accepted));
    Ok(addr)
}

async fn accept(listener: TcpListener, app: Router, accepted: Arc<AtomicU64>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_STREAMS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, say: the clients see errors; try again shortly.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let (builder, service) = (builder.clone(), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
