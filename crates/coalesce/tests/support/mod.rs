//! The backend and helpers the layer's tests share.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_coalesce::{Coalesce, CoalesceBuilder, CoalesceEventKind, CoalesceLayer};
use tower_bulwark_core::testing::ReadinessProbe;
use tower_bulwark_core::{BoxError, Rejection, RejectionKind};

pub type TestBody = BoxBody<Bytes, BoxError>;

/// What the backend answers.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// `answer to <uri>`, with an `x-call` header numbering the call.
    Text,
    /// The `Authorization` header's value.
    Echo,
    /// A body of `len` bytes; `announced`: its size is known up front.
    Big { len: usize, announced: bool },
    /// A bulwark refusal from below.
    Refuse,
    /// A plain error.
    Fail,
    /// A 429 answered below, its `Throttled` rejection in the extensions.
    Throttled,
}

/// What happened to the backend's calls.
#[derive(Default, Debug)]
pub struct Stats {
    pub calls: AtomicUsize,
    pub finished: AtomicUsize,
    /// Calls whose future was dropped before it finished.
    pub cancelled: AtomicUsize,
}

impl Stats {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A backend that takes `latency` (tokio's clock) to answer.
#[derive(Clone)]
pub struct Backend {
    pub stats: Arc<Stats>,
    pub latency: Duration,
    pub reply: Reply,
}

impl Backend {
    pub fn new(reply: Reply) -> Self {
        Backend {
            stats: Arc::default(),
            latency: Duration::from_millis(50),
            reply,
        }
    }
}

/// Counts a call cancelled unless it was marked finished.
struct Running {
    stats: Arc<Stats>,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            self.stats.finished.fetch_add(1, Ordering::SeqCst);
        } else {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Service<Request<()>> for Backend {
    type Response = Response<TestBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<TestBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let call = self.stats.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut running = Running {
            stats: self.stats.clone(),
            finished: false,
        };
        let (latency, reply) = (self.latency, self.reply);
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            running.finished = true;
            drop(running);
            let body: TestBody = match reply {
                Reply::Text => full(format!("answer to {}", request.uri())),
                Reply::Echo => full(
                    request
                        .headers()
                        .get("authorization")
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .unwrap_or_default(),
                ),
                Reply::Big {
                    len,
                    announced: true,
                } => full(vec![b'x'; len]),
                Reply::Big {
                    len,
                    announced: false,
                } => Chunks { left: len }.boxed(),
                Reply::Refuse => {
                    return Err(Rejection::new(RejectionKind::Overloaded, "below").into())
                }
                Reply::Fail => return Err("backend broke".into()),
                Reply::Throttled => {
                    let mut response = Response::new(full("slow down"));
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    response
                        .extensions_mut()
                        .insert(Rejection::new(RejectionKind::Throttled, "limit below"));
                    return Ok(response);
                }
            };
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header("x-call", call)
                .body(body)
                .unwrap())
        })
    }
}

pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `left` bytes in 1 KiB chunks, its size not announced.
pub struct Chunks {
    pub left: usize,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(1024);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }
}

/// The events a layer reported, in order.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<CoalesceEventKind>>>);

impl Events {
    pub fn count(&self, kind: CoalesceEventKind) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == kind)
            .count()
    }
    pub fn all(&self) -> Vec<CoalesceEventKind> {
        self.0.lock().unwrap().clone()
    }
}

/// A builder that reports to `events`.
pub fn builder(events: &Events) -> CoalesceBuilder {
    let events = events.clone();
    CoalesceLayer::builder().name("test").on_event(
        move |e: &tower_bulwark_coalesce::CoalesceEvent| events.0.lock().unwrap().push(e.kind),
    )
}

pub type TestService = Coalesce<ReadinessProbe<Backend>>;

pub fn service(layer: &CoalesceLayer, backend: &Backend) -> TestService {
    layer.layer(ReadinessProbe::new(backend.clone()))
}

/// An answer, read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rejection: Option<Rejection>,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub shared: bool,
}

/// Sends `request` through a clone of `service` (ready, then call) and reads the answer.
pub async fn send(service: &TestService, request: Request<()>) -> Result<Answer, BoxError> {
    let response = service.clone().oneshot(request).await?;
    let rejection = Rejection::in_response(&response).cloned();
    let (parts, body) = response.into_parts();
    let shared = body.is_shared();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        rejection,
        status: parts.status,
        headers: parts.headers,
        body,
        shared,
    })
}

/// Spawns [`send`].
pub fn spawn_send(
    service: &TestService,
    request: Request<()>,
) -> tokio::task::JoinHandle<Result<Answer, BoxError>> {
    let service = service.clone();
    tokio::spawn(async move { send(&service, request).await })
}

pub fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

pub fn get_as(uri: &str, authorization: &str) -> Request<()> {
    Request::get(uri)
        .header("authorization", authorization)
        .body(())
        .unwrap()
}
