//! Helpers for the integration tests: real servers on loopback and a real HTTP/1 client.
//!
//! Nothing here is mocked: servers listen on `127.0.0.1` on a port the OS picks, and the
//! client speaks HTTP/1.1 over a TCP connection to it.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Serves an axum router on a fresh loopback port until the test's runtime ends.
pub async fn serve_axum(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("axum server");
    });
    addr
}

/// A response read to its end.
#[derive(Debug)]
pub struct Received {
    /// Status and headers.
    pub head: http::response::Parts,
    /// The whole body.
    pub body: Bytes,
}

/// Sends `request` to `addr` over a new HTTP/1.1 connection and reads the whole response.
pub async fn send<B>(addr: SocketAddr, request: http::Request<B>) -> Received
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("response");
    let (head, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Received { head, body }
}

/// A `GET` of `path` with the given headers.
pub fn get(path: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).expect("valid request")
}

/// Holds tokio's paused clock still while requests travel over real sockets, for tests in
/// paused time over loopback.
///
/// A paused clock jumps to the next timer whenever the runtime has nothing to do, and a
/// runtime waiting for a socket has nothing to do: an answer on its way could lose to a
/// timeout. tokio does not auto-advance while a blocking task runs (see
/// `tokio::time::pause`), so [`hold`](Still::hold) starts one that lasts until
/// [`release`](Still::release). A transport holds from sending a request until its answer;
/// a handler that means to hang releases, and the clock runs to the timeouts, as it would
/// for a dependency that never answers. Sequential calls only: one hold at a time.
#[derive(Debug, Clone, Default)]
pub struct Still(std::sync::Arc<std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>>);

impl Still {
    /// Keeps the clock still until [`release`](Still::release).
    pub fn hold(&self) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || released.recv());
        *self.0.lock().expect("not poisoned") = Some(release);
    }

    /// Lets the clock auto-advance again.
    pub fn release(&self) {
        self.0.lock().expect("not poisoned").take();
    }
}
