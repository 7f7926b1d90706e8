//! Heap allocations per call on the happy path, counted by a global allocator that counts
//! per thread (`allocation-counter`).
//!
//! The rule (CONTRIBUTING.md, rule 3): zero allocations per call once a service is built and
//! warmed up. Pattern crates add their layers here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tower::{Service, ServiceExt};
use tower_bulwark::events::Listeners;
use tower_bulwark::testing::Noop;
use tower_bulwark::HandleRejections;

/// With the `metrics` facade recording: no allocation per call either.
#[path = "allocations/metrics.rs"]
mod with_metrics;

/// The idempotency layer on the requests it passes by.
#[path = "allocations/idempotency.rs"]
mod idempotency;

/// The rate limit layers and the local limiter, for keys they hold.
#[path = "allocations/ratelimit.rs"]
mod ratelimit;

/// The coalescing layer: nothing on the requests it passes by, the shared slot for a
/// request that leads a call.
#[path = "allocations/coalesce.rs"]
mod coalesce;

/// The hedge layer, on calls answered before their hedge is due.
#[path = "allocations/hedge.rs"]
mod hedge;

/// The outlier layer on calls to an endpoint in rotation.
#[path = "allocations/outlier.rs"]
mod outlier;

const CALLS: u64 = 1_000;

/// Allocations made by `CALLS` ready+call round trips, after a warm-up that lets lazily
/// built state (runtime internals, semaphores' wait lists) settle.
fn allocations<S, Req>(mut service: S, request: impl Fn() -> Req) -> u64
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut round_trips = |count: u64| {
        runtime.block_on(async {
            for _ in 0..count {
                let response = service.ready().await.unwrap().call(request()).await;
                std::hint::black_box(response.unwrap());
            }
        })
    };
    round_trips(100);
    allocation_counter::measure(|| round_trips(CALLS)).count_total
}

fn http_noop() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    Noop.map_response(|_request: Request<()>| Response::new(()))
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the other tests: a counter that always says 0 would make them pass vacuously.
    let boxing = tower::service_fn(|x: u64| async move { Ok::<_, ()>(Box::new(x)) });
    assert!(allocations(boxing, || 1) >= CALLS);
}

#[test]
fn noop_baseline_allocates_nothing() {
    assert_eq!(allocations(Noop, || 7u64), 0);
}

#[test]
fn handle_rejections_allocates_nothing_on_success() {
    assert_eq!(
        allocations(HandleRejections::new(http_noop()), || Request::new(())),
        0
    );
}

#[test]
fn rejections_as_status_allocates_nothing_on_success() {
    use tower_bulwark::RejectionsAsStatus;
    assert_eq!(
        allocations(RejectionsAsStatus::new(http_noop()), || Request::new(())),
        0
    );
}

#[test]
fn events_without_listeners_are_never_built() {
    let listeners = Listeners::<String>::new();
    let built = AtomicUsize::new(0);
    let count = allocation_counter::measure(|| {
        for i in 0..CALLS {
            listeners.emit(|| {
                built.fetch_add(1, Ordering::Relaxed);
                format!("call {i} finished")
            });
        }
    })
    .count_total;
    assert_eq!(count, 0);
    assert_eq!(built.load(Ordering::Relaxed), 0);
}

#[test]
fn events_with_a_listener_add_no_allocation_of_their_own() {
    let heard = Arc::new(AtomicUsize::new(0));
    let mut listeners = Listeners::<Duration>::new();
    let counter = heard.clone();
    listeners.push(move |_latency: &Duration| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let count = allocation_counter::measure(|| {
        for i in 0..CALLS {
            listeners.emit(|| Duration::from_micros(i));
        }
    })
    .count_total;
    assert_eq!(count, 0);
    assert_eq!(heard.load(Ordering::Relaxed), CALLS as usize);
}

/// The breaker's closed path, in each configuration that touches different machinery:
/// consecutive failures only (the default), a count window, a time window with slow-call
/// detection (which read the clock) and a recovery ramp.
#[test]
fn circuit_breaker_allocates_nothing_while_closed() {
    use tower::Layer;
    use tower_bulwark::breaker::{CircuitBreakerLayer, WindowKind};

    let default = CircuitBreakerLayer::new();
    assert_eq!(allocations(default.layer(Noop), || 7u64), 0, "default");

    let count = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .window(WindowKind::Count(100))
        .build()
        .unwrap();
    assert_eq!(allocations(count.layer(Noop), || 7u64), 0, "count window");

    let time = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .slow_calls(Duration::from_secs(1), 0.5)
        .window(WindowKind::Time {
            length: Duration::from_secs(60),
            buckets: 10,
        })
        .recovery_ramp(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(allocations(time.layer(Noop), || 7u64), 0, "time window");
}

/// A bulkhead call that finds a free permit, in both admission modes.
#[test]
fn bulkhead_allocates_nothing_with_a_free_permit() {
    use tower::Layer;
    use tower_bulwark::bulkhead::{Admission, BulkheadLayer};

    for admission in [Admission::Reject, Admission::Backpressure] {
        let layer = BulkheadLayer::builder()
            .max_concurrent(64)
            .max_queue(16)
            .admission(admission)
            .build()
            .unwrap();
        assert_eq!(allocations(layer.layer(Noop), || 7u64), 0, "{admission:?}");
    }
}

/// A call whose first attempt succeeds: tower's `Retry` with our policy clones the request
/// (a `u64` here, no allocation) and the policy (one `Arc` clone), and allocates nothing.
#[test]
fn retry_allocates_nothing_when_the_first_attempt_succeeds() {
    use tower::Layer;
    use tower_bulwark::retry::RetryPolicy;

    let policy = RetryPolicy::builder().build().unwrap();
    assert_eq!(allocations(policy.layer().layer(Noop), || 7u64), 0);
}

/// `GrpcRetry` deciding on a call of a marked method: only tower's copy of the request.
#[test]
fn grpc_retry_allocates_only_the_request_copy() {
    use tower::Layer;
    use tower_bulwark::retry::{GrpcRetry, RetryPolicy};

    let retry = GrpcRetry::new().service("pkg.Service").unwrap();
    let policy = RetryPolicy::builder().classify(retry).build().unwrap();
    assert_eq!(
        added_per_call(policy.layer().layer(http_noop()), grpc_request),
        clone_cost(grpc_request)
    );
}

/// tower's own middleware, measured so pattern crates can compare: each is expected to
/// allocate nothing per call after warm-up. If a tower release changes that, this test
/// names which one.
#[test]
fn tower_peers_allocate_nothing_after_warm_up() {
    use tower::limit::ConcurrencyLimit;
    use tower::load_shed::LoadShed;
    use tower::timeout::Timeout;
    assert_eq!(
        allocations(ConcurrencyLimit::new(Noop, 64), || 7u64),
        0,
        "ConcurrencyLimit"
    );
    assert_eq!(allocations(LoadShed::new(Noop), || 7u64), 0, "LoadShed");
    assert_eq!(
        allocations(Timeout::new(Noop, Duration::from_secs(1)), || 7u64),
        0,
        "Timeout"
    );
}

/// Allocations per call that `layer` adds to the HTTP no-op, for requests made by `request`
/// (whose own allocations, counted in both runs, cancel out).
fn added_per_call<S>(layered: S, request: impl Fn() -> Request<()> + Copy) -> u64
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let with = allocations(layered, request);
    let without = allocations(http_noop(), request);
    (with - without) / CALLS
}

/// A request as a gRPC client sends it: a deadline header among others.
fn grpc_request() -> Request<()> {
    Request::post("/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "250m")
        .body(())
        .unwrap()
}

/// The timeouts allocate nothing per call (the adaptive one records into its fixed-size
/// histograms).
#[test]
fn deadline_timeouts_allocate_nothing() {
    use tower::Layer;
    use tower_bulwark::deadline::{AdaptiveTimeoutLayer, TimeoutLayer};

    let timeout = TimeoutLayer::new(Duration::from_secs(1)).unwrap();
    assert_eq!(allocations(timeout.layer(Noop), || 7u64), 0);
    let adaptive = AdaptiveTimeoutLayer::builder().build().unwrap();
    assert_eq!(allocations(adaptive.layer(Noop), || 7u64), 0);
}

/// Accepting a deadline stores it in the request's extensions, which `http` allocates for:
/// the boxed value and, when the request has no extensions yet, the boxed map and its
/// table. That is all it allocates.
#[test]
fn accepting_a_deadline_allocates_only_the_extension() {
    use tower::Layer;
    use tower_bulwark::deadline::AcceptDeadlineLayer;

    let accept = AcceptDeadlineLayer::builder().build().unwrap();
    assert_eq!(added_per_call(accept.layer(http_noop()), grpc_request), 3);
    let without = AcceptDeadlineLayer::builder()
        .store_in_extensions(false)
        .build()
        .unwrap();
    assert_eq!(added_per_call(without.layer(http_noop()), grpc_request), 0);
    // A request with no deadline and no default: nothing at all.
    assert_eq!(
        added_per_call(accept.layer(http_noop()), || Request::new(())),
        0
    );
}

/// Propagating a deadline writes one header value: that is all it allocates.
#[test]
fn propagating_a_deadline_allocates_only_the_header_value() {
    use tower::Layer;
    use tower_bulwark::deadline::PropagateDeadlineLayer;

    let propagate = PropagateDeadlineLayer::builder()
        .default_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(
        added_per_call(propagate.layer(http_noop()), grpc_request),
        1
    );
    let untouched = PropagateDeadlineLayer::builder().build().unwrap();
    assert_eq!(
        added_per_call(untouched.layer(http_noop()), grpc_request),
        0
    );
}

/// Admission by the shedding layer allocates nothing: a fixed limit, and an adaptive one
/// (whose algorithm learns from every call under its lock).
#[test]
fn shedding_admission_allocates_nothing() {
    use tower::Layer;
    use tower_bulwark::shed::{Fixed, Gradient2, ShedLayer, Vegas};

    let fixed = ShedLayer::builder()
        .fixed(Fixed::new(1024).unwrap())
        .build()
        .unwrap();
    assert_eq!(allocations(fixed.layer(Noop), || 7u64), 0, "fixed");
    let vegas = ShedLayer::builder()
        .algorithm(Vegas::default())
        .build()
        .unwrap();
    assert_eq!(allocations(vegas.layer(Noop), || 7u64), 0, "vegas");
    let gradient = ShedLayer::builder()
        .algorithm(Gradient2::default())
        .build()
        .unwrap();
    assert_eq!(allocations(gradient.layer(Noop), || 7u64), 0, "gradient2");
}

/// Client-side throttling allocates nothing per call while it admits.
#[test]
fn throttling_allocates_nothing_while_admitting() {
    use tower::Layer;
    use tower_bulwark::shed::AdaptiveThrottleLayer;

    let throttle = AdaptiveThrottleLayer::builder().build().unwrap();
    assert_eq!(allocations(throttle.layer(Noop), || 7u64), 0);
}

/// Allocations made by `CALLS` runs of `round_trip` on a current-thread runtime, after 100
/// runs to warm up. Time is paused (and moves on when the runtime is idle), so waits take
/// no real time and the runtime's own work does not depend on the machine's speed.
fn runs(mut round_trip: impl AsyncFnMut()) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..100 {
            round_trip().await;
        }
    });
    allocation_counter::measure(|| {
        runtime.block_on(async {
            for _ in 0..CALLS {
                round_trip().await;
            }
        })
    })
    .count_total
}

/// Allocations made by `CALLS` ready+call round trips that each end in an error.
fn refusals<S, Req>(mut service: S, request: impl Fn() -> Req) -> u64
where
    S: Service<Req>,
{
    runs(async || {
        let result = service.ready().await.ok().unwrap().call(request()).await;
        assert!(result.is_err(), "every call is refused");
    })
}

/// Takes one place (a permit, a slot in flight) from `service` and keeps it for as long as
/// the returned future lives: `call` takes it, and the future is never polled.
fn hold<S: Service<Req>, Req>(service: &mut S, request: Req) -> S::Future {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    service.call(request)
}

// === fallback, backup, drain, replay ===

/// Allocations of one copy of a value `make` builds (a fresh one each time: a header value
/// may allocate when first shared).
fn clone_cost<T: Clone>(make: impl Fn() -> T) -> u64 {
    let made = allocation_counter::measure(|| {
        for _ in 0..CALLS {
            std::hint::black_box(make());
        }
    });
    let copied = allocation_counter::measure(|| {
        for _ in 0..CALLS {
            let value = make();
            std::hint::black_box((value.clone(), value));
        }
    });
    (copied.count_total - made.count_total) / CALLS
}

/// A response as a JSON API sends it.
fn json_response() -> Response<()> {
    Response::builder()
        .header(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )
        .body(())
        .unwrap()
}

/// A successful call through a fallback allocates nothing: a last-good cache copies a
/// key's answer at most once per refresh period (a second by default), so a hot key's
/// calls copy nothing; with a zero period each success is copied: exactly one copy's
/// allocations (none for a response without headers).
#[test]
fn fallback_allocates_only_the_last_good_copy() {
    use tower::Layer;
    use tower_bulwark::fallback::FallbackLayer;

    let fixed = FallbackLayer::builder()
        .static_response(Response::new(()))
        .build()
        .unwrap();
    assert_eq!(
        allocations(fixed.layer(http_noop()), || Request::new(())),
        0
    );

    // A capacity of 1: the cache reaches its steady size during the warm-up.
    let last_good = |refresh| {
        FallbackLayer::builder()
            .last_good(Duration::from_secs(60), 1)
            .last_good_refresh(refresh)
            .build()
            .unwrap()
    };
    let json = Noop.map_response(|_request: Request<()>| json_response());
    let added = |refresh| {
        let layer = last_good(refresh);
        assert_eq!(
            allocations(layer.layer(http_noop()), || Request::new(())),
            0
        );
        (allocations(layer.layer(json.clone()), || Request::new(()))
            - allocations(json.clone(), || Request::new(())))
            / CALLS
    };
    assert_eq!(added(Duration::from_secs(1)), 0, "a hot key is not copied");
    let copy = clone_cost(json_response);
    assert!(copy > 0, "a header map allocates when copied");
    assert_eq!(added(Duration::ZERO), copy, "every success copied");
}

/// The backup layer copies each request before the primary call (the backup may need it):
/// exactly one copy's allocations, none for a request without headers.
#[test]
fn backup_allocates_only_the_request_copy() {
    use tower::Layer;
    use tower_bulwark::fallback::BackupLayer;

    let backup = BackupLayer::new(http_noop());
    assert_eq!(
        allocations(backup.layer(http_noop()), || Request::new(())),
        0
    );
    let copy = clone_cost(grpc_request);
    assert!(copy > 0, "a header map allocates when copied");
    assert_eq!(
        added_per_call(backup.layer(http_noop()), grpc_request),
        copy
    );
}

/// The drain layer counts requests in flight: nothing allocated, serving or draining with
/// `keep_serving`.
#[test]
fn drain_allocates_nothing() {
    use tower::Layer;
    use tower_bulwark::health::DrainLayer;

    let drain = DrainLayer::new();
    assert_eq!(
        allocations(drain.layer(http_noop()), || Request::new(())),
        0
    );
    let keep_serving = DrainLayer::new().keep_serving();
    keep_serving.handle().drain();
    assert_eq!(
        allocations(keep_serving.layer(http_noop()), || Request::new(())),
        0
    );
}

/// `ReplayLayer` allocates per call by design: the recording a retry replays from (the
/// boxed body, the shared recording, its waiters: 3) and the `Replayable` extension that
/// tells the layers inside whether the body can be sent again (the boxed value and, for a
/// request with no extensions yet, the boxed map and its table: 3).
#[test]
fn replay_allocates_its_recording_and_extension() {
    use tower::Layer;
    use tower_bulwark::retry::{ReplayBody, ReplayLayer};

    let inner = Noop.map_response(|_request: Request<ReplayBody>| Response::new(()));
    let request = || Request::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")));
    let bare = Noop
        .map_response(|_request: Request<http_body_util::Full<bytes::Bytes>>| Response::new(()));
    assert_eq!(allocations(bare, request), 0);
    let replay = ReplayLayer::new(64 * 1024);
    assert_eq!(allocations(replay.layer(inner), request), 6 * CALLS);
}
