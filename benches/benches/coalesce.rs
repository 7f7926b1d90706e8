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
//! the method and URI (ours adds the `Authorization` and `Cookie` values, none here).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
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
    group.finish();
}

criterion_group!(benches, coalesce);
criterion_main!(benches);
