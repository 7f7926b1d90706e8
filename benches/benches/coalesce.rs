//! The coalescing layer beside tower-resilience's `coalesce` (its 0.13 `CoalesceLayer`) and
//! the bare service, in the same run.
//!
//! `cargo bench -p tower-bulwark-benches --bench coalesce` (add `-- --quick` for a short
//! run). The inner service answers at once (a small HTTP answer: status, one header, a
//! body of shared `Bytes`); read the results as ratios:
//!
//! - `one_caller/*`: `ready()` + `call()` of one `GET` with nothing else in flight, the
//!   harness of `benches/src/lib.rs`: the cost of a call that leads and shares with
//!   nobody. `post_passed_by` is a `POST`, which our layer hands on untouched;
//! - `16_callers/*`: 16 identical `GET`s called before any is polled (so 15 join the
//!   first), then awaited: time per batch. `plain` makes 16 inner calls.
//!
//! tower-resilience's layer needs `Clone` responses and errors, so its inner service
//! answers a `Clone` struct of the same parts instead of an `http::Response`; its key is
//! the method and URI. So the `tower_resilience` rows do less than ours: no body to read
//! (its answer's body is `Bytes` already; ours reads the inner service's `Full` body into
//! the shared bytes), no headers in the key (ours looks up `Authorization`, `Cookie`,
//! `Accept`, `Accept-Encoding`, `Accept-Language` and, for a URI without authority,
//! `Host`; none here, so each lookup is cheap), no `Vary` check, no conditional-request
//! check, no deadline. `tower_resilience_same_work` gives it the same work where it has
//! a place for it: its inner service reads the same `Full` body into the answer, and its
//! key holds the same header values (cloned, as its key must be owned).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark::coalesce::CoalesceLayer;
use tower_bulwark_benches::{bench_ready_call, current_thread_runtime};

/// The answer as tower-resilience needs it: `Clone`. (Its fields are only moved and
/// cloned, as a caller's answer would be before it is read.)
#[allow(dead_code)]
#[derive(Clone, Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

/// The inner services' futures: answered at once.
type Answered<T> = Ready<Result<T, Infallible>>;

const BODY: &[u8] = br#"{"item":7,"price":42}"#;

/// The inner service of our layer (and the plain baseline).
fn http_backend() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Answered<Response<Full<Bytes>>>,
> + Clone
       + Send
       + 'static {
    service_fn(|_request: Request<()>| {
        let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
        *response.headers_mut() = headers();
        ready(Ok(response))
    })
}

/// The inner service of tower-resilience's layer.
fn clone_backend(
) -> impl Service<Request<()>, Response = Answer, Error = Infallible, Future = Answered<Answer>>
       + Clone
       + Send
       + 'static {
    service_fn(|_request: Request<()>| {
        ready(Ok(Answer {
            status: StatusCode::OK,
            headers: headers(),
            body: Bytes::from_static(BODY),
        }))
    })
}

/// tower-resilience's inner service doing what ours does with an answer: reading the
/// inner service's `Full` body whole.
fn buffering_backend() -> impl Service<
    Request<()>,
    Response = Answer,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Answer, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    let mut inner = http_backend();
    service_fn(move |request: Request<()>| {
        let call = inner.call(request);
        async move {
            let (head, body) = call.await?.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Answer {
                status: head.status,
                headers: head.headers,
                body,
            })
        }
    })
}

/// Our default key, owned: method, URI, `Host` for a URI without authority, and the
/// per-user and content-negotiation headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FullKey {
    method: Method,
    uri: Uri,
    headers: [Option<HeaderValue>; 6],
}

fn full_key(request: &Request<()>) -> FullKey {
    let value = |name: HeaderName| request.headers().get(name).cloned();
    let host = match request.uri().authority() {
        Some(_) => None,
        None => value(HOST),
    };
    FullKey {
        method: request.method().clone(),
        uri: request.uri().clone(),
        headers: [
            value(AUTHORIZATION),
            value(COOKIE),
            value(ACCEPT),
            value(ACCEPT_ENCODING),
            value(ACCEPT_LANGUAGE),
            host,
        ],
    }
}

fn get() -> Request<()> {
    let mut request = Request::new(());
    *request.uri_mut() = Uri::from_static("/items/7?view=full");
    request
}

fn post() -> Request<()> {
    let mut request = get();
    *request.method_mut() = Method::POST;
    request
}

/// `n` identical calls made before any is polled, then awaited in order.
fn bench_batch<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    service: S,
    n: usize,
) where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let runtime = current_thread_runtime();
    let mut futures = Vec::with_capacity(n);
    let mut services: Vec<S> = (0..n).map(|_| service.clone()).collect();
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = tokio::time::Instant::now();
                for _ in 0..iterations {
                    for service in services.iter_mut() {
                        let ready = service.ready().await.expect("ready");
                        futures.push(ready.call(std::hint::black_box(get())));
                    }
                    for future in futures.drain(..) {
                        std::hint::black_box(future.await.expect("call"));
                    }
                }
                start.elapsed()
            })
        })
    });
}

fn coalesce(c: &mut Criterion) {
    let ours = CoalesceLayer::builder().build().unwrap();
    let peer = tower_resilience::coalesce::CoalesceLayer::new(|request: &Request<()>| {
        (request.method().clone(), request.uri().clone())
    });
    let peer_same_work = tower_resilience::coalesce::CoalesceLayer::new(full_key);

    let mut group = c.benchmark_group("coalesce/one_caller");
    group.measurement_time(Duration::from_secs(3));
    bench_ready_call(&mut group, "plain", http_backend(), get);
    bench_ready_call(&mut group, "bulwark", ours.layer(http_backend()), get);
    bench_ready_call(
        &mut group,
        "tower_resilience",
        peer.clone().layer(clone_backend()),
        get,
    );
    bench_ready_call(
        &mut group,
        "tower_resilience_same_work",
        peer_same_work.clone().layer(buffering_backend()),
        get,
    );
    bench_ready_call(
        &mut group,
        "bulwark_post_passed_by",
        ours.layer(http_backend()),
        post,
    );
    group.finish();

    let mut group = c.benchmark_group("coalesce/16_callers");
    group.measurement_time(Duration::from_secs(3));
    bench_batch(&mut group, "plain", http_backend(), 16);
    bench_batch(&mut group, "bulwark", ours.layer(http_backend()), 16);
    bench_batch(
        &mut group,
        "tower_resilience",
        peer.layer(clone_backend()),
        16,
    );
    bench_batch(
        &mut group,
        "tower_resilience_same_work",
        peer_same_work.layer(buffering_backend()),
        16,
    );
    group.finish();
}

criterion_group!(benches, coalesce);
criterion_main!(benches);
