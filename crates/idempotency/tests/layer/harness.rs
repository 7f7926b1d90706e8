//! What the layer tests share: a body of chosen frames, a handler that counts its runs,
//! stores that fail or wait on purpose, and a client that reads whole answers.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{Notify, Semaphore};
use tower::{Service, ServiceExt};
use tower_bulwark_idempotency::{
    Claimed, Fingerprint, IdempotencyBuilder, IdempotencyEvent, MemoryStore, Outcome, Record,
    RequestBody, ResponseBody, Store, StoreError, StoreFuture, StoreKey, Token, IDEMPOTENCY_KEY,
};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body made of the frames given, in order: data, trailers, or an error.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, io::Error>>,
    /// Its size is announced.
    exact: bool,
    /// Its end is announced with its last frame (else found when polled).
    ends: bool,
}

impl Frames {
    pub(crate) fn empty() -> Self {
        Frames {
            frames: VecDeque::new(),
            exact: true,
            ends: true,
        }
    }

    /// One data frame, its size announced.
    pub(crate) fn data(data: impl Into<Bytes>) -> Self {
        Frames::empty().then(data)
    }

    /// One data frame per chunk, neither size nor end announced.
    pub(crate) fn chunks(chunks: &[&'static [u8]]) -> Self {
        let mut body = Frames::default();
        for chunk in chunks {
            body = body.then(*chunk);
        }
        body
    }

    pub(crate) fn then(mut self, data: impl Into<Bytes>) -> Self {
        self.frames.push_back(Ok(Frame::data(data.into())));
        self
    }

    /// Its end found only when polled.
    pub(crate) fn hiding_end(mut self) -> Self {
        self.ends = false;
        self
    }

    pub(crate) fn then_trailers(mut self, trailers: HeaderMap) -> Self {
        self.frames.push_back(Ok(Frame::trailers(trailers)));
        self
    }

    pub(crate) fn then_error(mut self) -> Self {
        self.frames
            .push_back(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
        self.exact = false;
        self
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.ends && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if !self.exact {
            return SizeHint::default();
        }
        let len = self
            .frames
            .iter()
            .filter_map(|f| f.as_ref().ok()?.data_ref().map(Bytes::len))
            .sum::<usize>();
        SizeHint::with_exact(len as u64)
    }
}

/// Answers a request: run number, request head, whole request body.
type Answer =
    dyn Fn(usize, &http::request::Parts, Bytes) -> Result<Response<Frames>, BoxError> + Send + Sync;

/// The service behind the layer. It counts its runs, reads the request body whole, and
/// waits for [`open`](Handler::open) when the request carries `x-wait`. By default it
/// answers `x-status` (else 201) with `run {n}: {request body}`, `content-type`, `x-run`
/// and `date`; `x-fail` makes it fail.
#[derive(Clone)]
pub(crate) struct Handler {
    runs: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    answer: Arc<Answer>,
}

pub(crate) const DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

impl Handler {
    pub(crate) fn new() -> Self {
        Handler::answering(|run, parts, body| {
            if parts.headers.contains_key("x-fail") {
                return Err("the handler failed".into());
            }
            let status = parts
                .headers
                .get("x-status")
                .map_or(201, |s| s.to_str().unwrap().parse().unwrap());
            let text = format!("run {run}: {}", String::from_utf8_lossy(&body));
            Ok(Response::builder()
                .status(status)
                .header("content-type", "text/plain")
                .header("x-run", run)
                .header("date", DATE)
                .body(Frames::data(text))
                .unwrap())
        })
    }

    pub(crate) fn answering(
        answer: impl Fn(usize, &http::request::Parts, Bytes) -> Result<Response<Frames>, BoxError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Handler {
            runs: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Semaphore::new(0)),
            answer: Arc::new(answer),
        }
    }

    /// How many requests reached the handler.
    pub(crate) fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// Lets one waiting (`x-wait`) run answer.
    pub(crate) fn open(&self) {
        self.gate.add_permits(1);
    }
}

impl Service<Request<RequestBody<Frames>>> for Handler {
    type Response = Response<Frames>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Frames>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody<Frames>>) -> Self::Future {
        let handler = self.clone();
        // An async block: polled after it completed, it panics.
        Box::pin(async move {
            let run = handler.runs.fetch_add(1, Ordering::SeqCst) + 1;
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            if parts.headers.contains_key("x-wait") {
                handler.gate.acquire().await?.forget();
            }
            (handler.answer)(run, &parts, body)
        })
    }
}

/// What a listener heard.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<Outcome>>>);

impl Events {
    pub(crate) fn listener(&self) -> impl Fn(&IdempotencyEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |event| {
            assert_eq!(event.idempotency, "payments");
            events.lock().unwrap().push(event.outcome);
        }
    }

    /// The outcomes heard since the last call.
    pub(crate) fn take(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A builder named `payments` that reports to `events`.
pub(crate) fn builder(events: &Events) -> IdempotencyBuilder {
    tower_bulwark_idempotency::IdempotencyLayer::builder()
        .name("payments")
        .on_event(events.listener())
}

/// A request: `key` is the raw header value, if any.
pub(crate) fn request(
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Frames,
) -> Request<Frames> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header(IDEMPOTENCY_KEY, key);
    }
    request.body(body).unwrap()
}

/// `POST /pay` with `key` and `body`.
pub(crate) fn pay(key: &str, body: &'static str) -> Request<Frames> {
    request(Method::POST, "/pay", Some(key), Frames::data(body))
}

/// `request` with one more header.
pub(crate) fn with(
    mut request: Request<Frames>,
    name: &'static str,
    value: &str,
) -> Request<Frames> {
    request
        .headers_mut()
        .append(name, HeaderValue::from_str(value).unwrap());
    request
}

/// A whole answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

impl Reply {
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub(crate) fn replayed(&self) -> bool {
        match self.headers.get("idempotent-replayed") {
            None => false,
            Some(value) => {
                assert_eq!(value, "true");
                true
            }
        }
    }

    /// Checks a refusal: status, problem+json, the problem's type, `Retry-After`.
    pub(crate) fn assert_problem(&self, status: u16, kind: &str, retry_after: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.headers["content-type"], "application/problem+json");
        assert_eq!(
            self.headers.get("retry-after").map(|v| v.to_str().unwrap()),
            retry_after
        );
        let body = self.text();
        let kind_of = body
            .strip_prefix(r#"{"type":""#)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no problem type in {body}"));
        assert!(kind_of.ends_with(&format!("#{kind}")), "{kind_of}");
        assert!(body.contains(&format!(r#""status":{status},"#)), "{body}");
        assert!(!self.replayed());
    }
}

/// Reads a response whole.
pub(crate) async fn read<B>(response: Response<B>) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

/// Calls `service` (a clone of it, so the future can be spawned) and reads the answer.
pub(crate) fn send<S>(service: &S, request: Request<Frames>) -> impl Future<Output = Reply> + Send
where
    S: Service<Request<Frames>, Response = Response<ResponseBody<Frames>>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let call = service.clone().oneshot(request);
    async move { read(call.await.unwrap()).await }
}

/// Lets every spawned task run until all wait (paused time moves on by 1 ms).
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The fingerprint the layer gives `request` (whatever its key), read back from a store
/// it ran in.
pub(crate) async fn fingerprint_of(mut request: Request<Frames>) -> Fingerprint {
    request
        .headers_mut()
        .insert(IDEMPOTENCY_KEY, HeaderValue::from_static("\"probe\""));
    request.headers_mut().remove(http::header::AUTHORIZATION);
    let store = MemoryStore::new();
    let layer = tower_bulwark_idempotency::IdempotencyLayer::builder()
        .store(store.clone())
        .build()
        .unwrap();
    let reply = send(&tower::Layer::layer(&layer, Handler::new()), request).await;
    assert!(reply.status.is_success());
    let probe = Fingerprint::from_bytes([0; 32]);
    let stored = StoreKey::new(b"", b"probe");
    match store
        .claim(stored, probe, Token::random(), Duration::from_secs(1))
        .await
    {
        Ok(Claimed::Existing(record)) => record.fingerprint,
        other => panic!("the request was not kept: {other:?}"),
    }
}

/// A store over a [`MemoryStore`] with one fault.
#[derive(Debug, Clone)]
pub(crate) struct FaultyStore {
    pub(crate) memory: MemoryStore,
    fault: Fault,
    /// How many releases were asked of it.
    pub(crate) releases: Arc<AtomicUsize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Every operation fails.
    Fails,
    /// No operation ever answers.
    Hangs,
    /// `complete` waits for the notify, then keeps.
    CompleteWaits(Arc<Notify>),
    /// `complete` fails.
    CompleteFails,
    /// `complete` and `release` fail as many times as the counter says, then work.
    WritesFailTimes(Arc<std::sync::atomic::AtomicUsize>),
}

impl FaultyStore {
    pub(crate) fn new(fault: Fault) -> Self {
        FaultyStore {
            memory: MemoryStore::new(),
            fault,
            releases: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether this write is one of those set to fail (and counts it).
    fn write_fails(&self) -> bool {
        use std::sync::atomic::Ordering;
        match &self.fault {
            Fault::WritesFailTimes(left) => left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok(),
            _ => false,
        }
    }

    fn fail<T: Send + 'static>(&self) -> Option<StoreFuture<'_, T>> {
        match self.fault {
            Fault::Fails => Some(Box::pin(std::future::ready(Err(StoreError::new(
                "connection refused",
            ))))),
            Fault::Hangs => Some(Box::pin(std::future::pending())),
            _ => None,
        }
    }
}

impl Store for FaultyStore {
    fn claim(
        &self,
        key: StoreKey,
        fingerprint: Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'_, Claimed> {
        self.fail()
            .unwrap_or_else(|| self.memory.claim(key, fingerprint, token, lease))
    }

    fn complete(
        &self,
        key: StoreKey,
        token: Token,
        record: Record,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        match &self.fault {
            Fault::CompleteWaits(gate) => Box::pin(async move {
                gate.notified().await;
                self.memory.complete(key, token, record, ttl).await
            }),
            Fault::CompleteFails => Box::pin(std::future::ready(Err(StoreError::new("down")))),
            Fault::WritesFailTimes(_) if self.write_fails() => {
                Box::pin(std::future::ready(Err(StoreError::new("blip"))))
            }
            _ => self
                .fail()
                .unwrap_or_else(|| self.memory.complete(key, token, record, ttl)),
        }
    }

    fn release(&self, key: StoreKey, token: Token) -> StoreFuture<'_, bool> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        if self.write_fails() {
            return Box::pin(std::future::ready(Err(StoreError::new("blip"))));
        }
        self.fail()
            .unwrap_or_else(|| self.memory.release(key, token))
    }
}
