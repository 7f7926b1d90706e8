//! Deadline propagation over real HTTP: a chain of three axum services, each accepting the
//! caller's deadline and passing what is left to the next one. The last never finishes.
//!
//! Each hop keeps a generous margin ([`MARGIN`]) of its time for the answer from below, so
//! the outcome does not depend on how fast a loaded machine moves it: only the last hop's
//! deadline can end the chain, and every answer travels back well within its caller's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_bulwark::deadline::{AcceptDeadlineLayer, PropagateDeadlineLayer};
use tower_bulwark::{BoxError, Deadline, HandleRejectionsLayer};
use tower_bulwark_tests::{send, serve_axum};

/// What one service of the chain saw and did.
#[derive(Default)]
struct Hop {
    /// The time left when its handler started.
    remaining: Mutex<Option<Duration>>,
    started: AtomicUsize,
    /// Handlers dropped before they finished (their work stopped).
    dropped: AtomicUsize,
    /// Work done after the handler's deadline had passed: must stay zero.
    late_work: AtomicUsize,
}

/// Counts a handler as dropped unless it finished.
struct Running(Arc<Hop>, bool);

impl Drop for Running {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What each hop keeps of its time for the answer from below.
const MARGIN: Duration = Duration::from_secs(1);

/// The edge's timeout: the last hop gets about 300 ms of it, two margins (and two headrooms)
/// less.
const EDGE_TIMEOUT: Duration = Duration::from_millis(2_300);

/// A call over HTTP/1 carrying the handler's remaining deadline, less [`MARGIN`]. (Boxed:
/// the handler's future must be `Send`, which the compiler cannot see through the layers.)
fn call_next(
    addr: SocketAddr,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<StatusCode, BoxError>> + Send>> {
    let propagate = PropagateDeadlineLayer::builder()
        .margin(MARGIN)
        .build()
        .expect("valid configuration");
    let client = propagate.layer(service_fn(
        move |request: http::Request<Full<Bytes>>| async move {
            let stream = TcpStream::connect(addr).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            Ok::<_, BoxError>(sender.send_request(request).await?.status())
        },
    ));
    let request = http::Request::get("/")
        .body(Full::default())
        .expect("valid request");
    Box::pin(client.oneshot(request))
}

/// One service: accepts the deadline; calls `next` if there is one, else works forever.
fn service(hop: Arc<Hop>, next: Option<SocketAddr>) -> Router {
    let handler = move || {
        let hop = hop.clone();
        async move {
            hop.started.fetch_add(1, Ordering::SeqCst);
            let deadline = Deadline::current().expect("the accept layer sets it");
            *hop.remaining.lock().unwrap() = Some(deadline.remaining());
            let mut running = Running(hop.clone(), false);
            let status = match next {
                Some(next) => call_next(next).await.unwrap_or(StatusCode::GATEWAY_TIMEOUT),
                None => std::future::pending().await,
            };
            if deadline.is_expired() {
                hop.late_work.fetch_add(1, Ordering::SeqCst);
            }
            running.1 = true;
            status
        }
    };
    Router::new().route("/", get(handler)).layer(
        ServiceBuilder::new()
            .layer(HandleRejectionsLayer::new())
            .layer(
                AcceptDeadlineLayer::builder()
                    .max(Duration::from_secs(30))
                    .build()
                    .unwrap(),
            ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_three_stops_at_the_edge_deadline_and_no_one_works_late() {
    let hops: Vec<Arc<Hop>> = (0..3).map(|_| Arc::default()).collect();
    let last = serve_axum(service(hops[2].clone(), None)).await;
    let middle = serve_axum(service(hops[1].clone(), Some(last))).await;
    let edge = serve_axum(service(hops[0].clone(), Some(middle))).await;

    let request = http::Request::get("/")
        .header("x-request-timeout-ms", EDGE_TIMEOUT.as_millis().to_string())
        .body(Full::<Bytes>::default())
        .unwrap();
    // The last service never finishes: an answer at all means the deadlines cut the chain.
    let response = send(edge, request).await;

    assert_eq!(response.head.status, 504);
    let remaining: Vec<Duration> = hops
        .iter()
        .map(|hop| {
            hop.remaining
                .lock()
                .unwrap()
                .expect("every hop was reached")
        })
        .collect();
    assert!(remaining[0] <= EDGE_TIMEOUT, "{remaining:?}");
    for pair in remaining.windows(2) {
        assert!(
            pair[1] <= pair[0] - MARGIN,
            "each hop passes on less, margin included: {remaining:?}"
        );
    }
    for (i, hop) in hops.iter().enumerate() {
        assert_eq!(hop.started.load(Ordering::SeqCst), 1, "hop {i}");
        assert_eq!(
            hop.late_work.load(Ordering::SeqCst),
            0,
            "hop {i} worked late"
        );
    }
    assert_eq!(
        hops[2].dropped.load(Ordering::SeqCst),
        1,
        "the slow handler was dropped at its deadline"
    );
    for (i, hop) in hops[..2].iter().enumerate() {
        assert_eq!(
            hop.dropped.load(Ordering::SeqCst),
            0,
            "hop {i} finished with the answer from below, before its own deadline"
        );
    }
}

#[tokio::test]
async fn a_request_that_arrives_too_late_is_refused_and_garbage_is_ignored() {
    let addr = serve_axum(
        Router::new().route("/", get(|| async { "fast" })).layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(
                    AcceptDeadlineLayer::builder()
                        .headers([tower_bulwark::deadline::DeadlineHeader::absolute_ms(
                            Duration::from_secs(1),
                        )])
                        .build()
                        .unwrap(),
                ),
        ),
    )
    .await;
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 100;
    let too_late = http::Request::get("/")
        .header("x-request-deadline", past.to_string())
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(send(addr, too_late).await.head.status, 504);
    for garbage in ["", "soon", "-1", "0", "99999999999999999999999"] {
        let request = http::Request::get("/")
            .header("x-request-deadline", garbage)
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = send(addr, request).await;
        assert_eq!(response.head.status, 200, "{garbage:?}");
        assert_eq!(&response.body[..], b"fast");
    }
}
