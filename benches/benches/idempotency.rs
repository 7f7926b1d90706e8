//! The idempotency layer's in-memory hot path beside a plain handler: `ready()` + `call()` +
//! the response body collected, on a current-thread runtime.
//!
//! `cargo bench -p tower-bulwark-benches --bench idempotency` (add `-- --quick` for a short
//! run). Read the results as ratios to `plain_handler`:
//!
//! - `passed_by`: a POST without a key (the layer hands it on untouched);
//! - `first_request`: a POST with a key never seen (fingerprint, claim, run, keep). Keys
//!   cycle through 65,536 values with a 2 ms TTL, so each has expired when it comes round
//!   again and the store stays at that size (no eviction is timed); the bench checks that
//!   every one of these requests ran the handler;
//! - `replay`: the same key every time, answered from the store.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark::idempotency::{IdempotencyLayer, IDEMPOTENCY_KEY};
use tower_bulwark_benches::bench_ready_call;

/// How many keys the first requests cycle through.
const KEYS: usize = 1 << 16;

/// What the handler answers.
type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// A handler answering a small JSON body; it counts its runs.
fn handler<B>(
    runs: Arc<AtomicU64>,
) -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Ready<Answer>,
> + Clone {
    service_fn(move |_request: Request<B>| -> Ready<Answer> {
        runs.fetch_add(1, Ordering::Relaxed);
        let body = Full::new(Bytes::from_static(br#"{"charge_id":"ch_1"}"#));
        let mut response = Response::new(body);
        *response.status_mut() = http::StatusCode::CREATED;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ready(Ok(response))
    })
}

/// `service` with its response body read to the end, as a server would.
fn collected<S, B>(
    service: S,
) -> impl Service<Request<Full<Bytes>>, Response = Bytes, Error = Infallible>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes, Error = Infallible>,
{
    service.and_then(|response: Response<B>| async move {
        Ok(response.into_body().collect().await?.to_bytes())
    })
}

fn payment(key: Option<HeaderValue>) -> Request<Full<Bytes>> {
    let mut request = Request::post("/payments")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(br#"{"amount":4200}"#)))
        .expect("valid request");
    if let Some(key) = key {
        request.headers_mut().insert(IDEMPOTENCY_KEY, key);
    }
    request
}

fn idempotency(c: &mut Criterion) {
    let mut group = c.benchmark_group("idempotency");
    let runs = Arc::new(AtomicU64::new(0));
    bench_ready_call(
        &mut group,
        "plain_handler",
        collected(handler(runs.clone())),
        || payment(None),
    );

    let layer = IdempotencyLayer::builder().build().expect("config");
    bench_ready_call(
        &mut group,
        "passed_by",
        collected(layer.layer(handler(runs.clone()))),
        || payment(None),
    );

    let first_runs = Arc::new(AtomicU64::new(0));
    let sent = Cell::new(0u64);
    let keys: Vec<HeaderValue> = (0..KEYS)
        .map(|i| HeaderValue::from_str(&format!("\"key-{i}\"")).expect("valid key"))
        .collect();
    // An answer expires 2 ms after it is kept (longer than the lease, as the builder asks).
    let short = IdempotencyLayer::builder()
        .lease(Duration::from_millis(1))
        .ttl(Duration::from_millis(2))
        .build()
        .expect("config");
    bench_ready_call(
        &mut group,
        "first_request",
        collected(short.layer(handler(first_runs.clone()))),
        || {
            let i = sent.get();
            sent.set(i + 1);
            payment(Some(keys[i as usize % KEYS].clone()))
        },
    );
    assert_eq!(
        first_runs.load(Ordering::Relaxed),
        sent.get(),
        "a first request was answered from the store: the keys came round before their TTL"
    );

    let replay_runs = Arc::new(AtomicU64::new(0));
    let replay = HeaderValue::from_static("\"the-same-key\"");
    bench_ready_call(
        &mut group,
        "replay",
        collected(layer.layer(handler(replay_runs.clone()))),
        || payment(Some(replay.clone())),
    );
    assert_eq!(
        replay_runs.load(Ordering::Relaxed),
        1,
        "every repeat was a replay"
    );
    group.finish();
}

criterion_group!(benches, idempotency);
criterion_main!(benches);
