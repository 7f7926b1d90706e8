//! Edge cases found by an adversarial review of the layer, each guarding a defect that was
//! fixed: damaged store data, a claim that timed out, answers past the lease, gRPC trailers
//! and refusals, the memory store's byte bound. Paused time, tower services and a
//! `MemoryStore`, as in `layer.rs`, whose harness this file reuses.

#[allow(dead_code)]
#[path = "layer/harness.rs"]
mod harness;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use harness::*;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};
use tower_bulwark_idempotency::{
    Claimed, Fingerprint, MemoryStore, Outcome, Record, RequestBody, Store, StoreFuture, StoreKey,
    Token,
};

const BODY: &str = r#"{"amount":10}"#;

// === Record::decode on store input ===

/// A `Done` record whose header count passes the "six bytes per header" check but is over
/// what a `HeaderMap` can hold (`HeaderMap::with_capacity` would panic): `decode` answers
/// an error, so a damaged Redis value never brings the request's task down.
#[test]
fn a_record_announcing_more_headers_than_a_map_holds_is_an_error_not_a_panic() {
    let count: u32 = 24_577; // 24_577 + 24_577 / 3 rounds up past 2^15 buckets
    let mut bytes = vec![1, b'D'];
    bytes.extend_from_slice(&[0; 16]); // token
    bytes.extend_from_slice(&[7; 32]); // fingerprint
    bytes.extend_from_slice(&200u16.to_be_bytes());
    bytes.extend_from_slice(&count.to_be_bytes());
    bytes.resize(bytes.len() + 6 * count as usize, 0);

    let decoded = std::panic::catch_unwind(|| Record::decode(&bytes));
    let decoded = decoded.expect("decode panicked on damaged bytes");
    assert!(decoded.is_err(), "{decoded:?}");
}

// === a claim that timed out ===

/// A `MemoryStore` whose first claim is made, but answered too late for the layer (a Redis
/// that ran the script and was slow to answer, or whose answer was lost).
#[derive(Debug, Clone)]
struct LateFirstClaim {
    memory: MemoryStore,
    late: Arc<AtomicBool>,
}

impl Store for LateFirstClaim {
    fn claim(
        &self,
        key: StoreKey,
        fingerprint: Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'_, Claimed> {
        let made = self.memory.claim(key, fingerprint, token, lease);
        if self.late.swap(false, Ordering::SeqCst) {
            return Box::pin(async move {
                let _ = made.await;
                std::future::pending().await
            });
        }
        made
    }

    fn complete(
        &self,
        key: StoreKey,
        token: Token,
        record: Record,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        self.memory.complete(key, token, record, ttl)
    }

    fn release(&self, key: StoreKey, token: Token) -> StoreFuture<'_, bool> {
        self.memory.release(key, token)
    }
}

/// The claim timed out, the request was refused with 503 and never ran, but the claim
/// landed: the layer takes it back (an owner-checked release, harmless when the claim never
/// landed), so the client's retry, with the store healthy again, runs instead of being
/// refused with 409 for the whole lease.
#[tokio::test(start_paused = true)]
async fn a_claim_that_timed_out_does_not_hold_the_key_for_a_lease() {
    let events = Events::default();
    let handler = Handler::new();
    let store = LateFirstClaim {
        memory: MemoryStore::new(),
        late: Arc::new(AtomicBool::new(true)),
    };
    let service = builder(&events)
        .store(store)
        .store_timeout(Duration::from_secs(1))
        .lease(Duration::from_secs(60))
        .build()
        .unwrap()
        .layer(handler.clone());

    send(&service, pay(r#""k1""#, BODY))
        .await
        .assert_problem(503, "store-unavailable", Some("1"));
    assert_eq!(handler.runs(), 0);
    assert_eq!(events.take(), [Outcome::StoreFailedClosed]);

    // The client retries after its `Retry-After`; the store answers in time now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retry = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(retry.status, 201, "{}", retry.text());
    assert_eq!(retry.headers["x-run"], "1");
    assert_eq!(handler.runs(), 1);
}

// === an answer that streams past the lease ===

/// A body that sends `head`, then waits for a permit of `gate`, then sends `tail` and ends.
struct Gated {
    head: Option<Bytes>,
    tail: Option<Bytes>,
    gate: Arc<Semaphore>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Body for Gated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if self.tail.is_none() {
            return Poll::Ready(None);
        }
        if self.waiting.is_none() {
            let gate = self.gate.clone();
            self.waiting = Some(Box::pin(async move {
                gate.acquire().await.unwrap().forget();
            }));
        }
        let waiting = self.waiting.as_mut().unwrap();
        std::task::ready!(waiting.as_mut().poll(cx));
        self.waiting = None;
        Poll::Ready(self.tail.take().map(|tail| Ok(Frame::data(tail))))
    }
}

/// The handler answered at once; its answer streams for longer than the lease, and no
/// repeat came meanwhile. The claim under the key is still its own (expired), so the
/// answer is kept when the body ends, and a repeat afterwards is replayed. (A repeat sent
/// while it streamed past the lease would have run: the lease must cover the run and the
/// sending of its answer, as the builder's docs say.)
#[tokio::test(start_paused = true)]
async fn an_answer_streaming_past_the_lease_is_still_kept_when_nobody_took_the_key() {
    let events = Events::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let handler = {
        let runs = runs.clone();
        let gate = gate.clone();
        tower::service_fn(move |_: Request<RequestBody<Frames>>| {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let body = Gated {
                head: Some(Bytes::from(format!("run {run}: "))),
                tail: Some(Bytes::from_static(b"receipt")),
                gate: gate.clone(),
                waiting: None,
            };
            async move { Ok::<_, BoxError>(Response::builder().status(201).body(body).unwrap()) }
        })
    };
    let lease = Duration::from_secs(10);
    let service = builder(&events)
        .lease(lease)
        .build()
        .unwrap()
        .layer(handler);

    let first = service.clone().oneshot(pay(r#""k1""#, BODY)).await.unwrap();
    assert_eq!(first.status(), 201);
    let mut first_body = first.into_body();
    let head = std::future::poll_fn(|cx| Pin::new(&mut first_body).poll_frame(cx)).await;
    assert_eq!(head.unwrap().unwrap().into_data().unwrap(), "run 1: ");
    tokio::time::sleep(lease + Duration::from_secs(1)).await;
    gate.add_permits(1);
    let tail = std::future::poll_fn(|cx| Pin::new(&mut first_body).poll_frame(cx)).await;
    assert_eq!(tail.unwrap().unwrap().into_data().unwrap(), "receipt");
    assert!(
        std::future::poll_fn(|cx| Pin::new(&mut first_body).poll_frame(cx))
            .await
            .is_none()
    );

    let repeat = service.clone().oneshot(pay(r#""k1""#, BODY)).await.unwrap();
    assert_eq!(repeat.headers()["idempotent-replayed"], "true");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the handler ran twice for one key"
    );
    assert_eq!(
        events.take(),
        [Outcome::Executed, Outcome::Replayed],
        "kept without a KeepFailed"
    );
}

// === gRPC ===

fn grpc_status(code: &'static str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(code));
    trailers
}

/// A gRPC answer that streams more than `max_response_body` and ends with `UNAVAILABLE` in
/// its trailers: the trailers are judged even though the copy is not whole, so the key is
/// released and the retry runs (not refused with 409 for the whole TTL).
#[tokio::test(start_paused = true)]
async fn a_grpc_failure_in_the_trailers_of_an_answer_over_the_limit_releases_the_key() {
    let events = Events::default();
    let handler = Handler::answering(|run, _, _| {
        Ok(Response::builder()
            .header("content-type", "application/grpc")
            .header("x-run", run)
            .body(Frames::data(vec![0u8; 16]).then_trailers(grpc_status("14")))
            .unwrap())
    });
    let service = builder(&events)
        .max_response_body(8)
        .build()
        .unwrap()
        .layer(handler.clone());

    let first = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.trailers, Some(grpc_status("14")));

    let retry = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(retry.headers["x-run"], "2");
    assert_eq!(handler.runs(), 2);
}

/// A gRPC client (tonic) reads a response without `grpc-status` by its HTTP status (409
/// and 422 would become `UNKNOWN`, 400 `INTERNAL`): a request with `content-type:
/// application/grpc` is refused in gRPC's form (HTTP 200, `grpc-status`, `grpc-message`),
/// as core's rejections are.
#[tokio::test(start_paused = true)]
async fn refusals_of_grpc_requests_are_grpc_answers() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());
    let grpc = |key: &str| {
        let request = request(
            Method::POST,
            "/payments.v1.Payments/Charge",
            Some(key),
            Frames::data(&b"\0\0\0\0\x02\x08\x0a"[..]),
        );
        with(
            with(request, "content-type", "application/grpc"),
            "te",
            "trailers",
        )
    };

    let bad_key = send(&service, grpc("unquoted")).await;
    assert_eq!(bad_key.status, 200, "{}", bad_key.text());
    assert_eq!(bad_key.headers["content-type"], "application/grpc");
    assert_eq!(bad_key.headers["grpc-status"], "3"); // INVALID_ARGUMENT
    assert_eq!(handler.runs(), 0);
}

// === MemoryStore bounds ===

/// `MemoryStore` is bounded in bytes as well as keys: 100 000 keys of answers of up to
/// 1 MiB would be about 100 GiB. Here 1 100 answers of 1 MiB (one shared buffer, so the
/// test itself is cheap) do not all stay: the finished ones closest to expiry go.
#[tokio::test(start_paused = true)]
async fn the_default_memory_store_is_bounded_in_bytes_not_only_in_keys() {
    use tower_bulwark_idempotency::{RecordState, StoredResponse};

    let store = MemoryStore::new();
    let body = Bytes::from(vec![b'x'; 1 << 20]);
    let fingerprint = Fingerprint::from_bytes([1; 32]);
    let answers = 1_100u32;
    for n in 0..answers {
        let key = StoreKey::new(b"tenant", &n.to_be_bytes());
        let token = Token::random();
        let lease = Duration::from_secs(60);
        let claimed = store.claim(key, fingerprint, token, lease).await.unwrap();
        assert_eq!(claimed, Claimed::New);
        let answer = Record {
            fingerprint,
            state: RecordState::Done(Box::new(StoredResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: body.clone(),
                trailers: None,
            })),
        };
        let ttl = Duration::from_secs(86_400);
        assert!(store.complete(key, token, answer, ttl).await.unwrap());
    }
    let bound = tower_bulwark_idempotency::DEFAULT_MEMORY_BYTES;
    assert!(store.bytes() <= bound, "{} bytes kept", store.bytes());
    // Eviction goes an eighth below the bound at a time: most of the budget stays in use.
    assert!(store.len() >= 50, "only {} answers kept", store.len());
    // The newest answer is among them.
    let newest = StoreKey::new(b"tenant", &(answers - 1).to_be_bytes());
    let seen = store
        .claim(newest, fingerprint, Token::random(), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(
        seen,
        Claimed::Existing(Record {
            state: RecordState::Done(_),
            ..
        })
    ));
}

// === a run a little longer than its lease, with no repeat meanwhile ===

/// The first run overran its lease, but nothing else took the key meanwhile: the claim
/// under the key is still its own (expired), or gone. `complete` writes then (never over
/// another token's claim or answer), so the client's retry is replayed, not run again.
#[tokio::test(start_paused = true)]
async fn a_run_that_overran_its_lease_alone_still_keeps_its_answer() {
    let events = Events::default();
    let handler = Handler::new();
    let lease = Duration::from_secs(10);
    let service = builder(&events)
        .lease(lease)
        .build()
        .unwrap()
        .layer(handler.clone());

    let first = tokio::spawn(send(&service, with(pay(r#""k1""#, BODY), "x-wait", "1")));
    settle().await;
    tokio::time::sleep(lease).await;
    handler.open();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201);
    assert_eq!(handler.runs(), 1);

    let retry = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(retry.replayed(), "ran again: {}", retry.text());
    assert_eq!(retry.headers["x-run"], "1");
    assert_eq!(handler.runs(), 1);
}
