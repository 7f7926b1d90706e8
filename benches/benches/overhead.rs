//! Per-call overhead of each layer in the ready+call harness, beside its peers.
//!
//! `cargo bench -p tower-bulwark-benches --bench overhead` (add `-- --quick` for a short run).
//! Read the results as ratios to `noop` and to the peers in the same group.

use std::convert::Infallible;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::retry::Retry;
use tower::timeout::Timeout;
use tower::{Service, ServiceExt};
use tower_bulwark::testing::Noop;
use tower_bulwark::HandleRejections;
use tower_bulwark_benches::{bench_ready_call, BudgetedRetry};

/// Plain requests: the baseline and tower's own middleware.
fn tower_peers(c: &mut Criterion) {
    let mut group = c.benchmark_group("ready_call");
    bench_ready_call(&mut group, "noop", Noop, || 7u64);
    bench_ready_call(
        &mut group,
        "tower_concurrency_limit",
        ConcurrencyLimit::new(Noop, 1024),
        || 7u64,
    );
    bench_ready_call(&mut group, "tower_load_shed", LoadShed::new(Noop), || 7u64);
    bench_ready_call(
        &mut group,
        "tower_retry_tps_budget",
        Retry::new(BudgetedRetry::new(), Noop),
        || 7u64,
    );
    bench_ready_call(
        &mut group,
        "tower_timeout",
        Timeout::new(Noop, Duration::from_secs(1)),
        || 7u64,
    );
    group.finish();
}

/// Our circuit breaker's closed path beside its peers (`ConcurrencyLimit` is the bar the
/// issue sets; tower-resilience's breaker is the direct peer).
fn circuit_breaker(c: &mut Criterion) {
    use tower::Layer;
    use tower_bulwark::breaker::{CircuitBreakerLayer, WindowKind};

    let mut group = c.benchmark_group("ready_call");
    bench_ready_call(
        &mut group,
        "bulwark_breaker_default",
        CircuitBreakerLayer::new().layer(Noop),
        || 7u64,
    );
    let count = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .window(WindowKind::Count(100))
        .build()
        .expect("breaker config");
    bench_ready_call(
        &mut group,
        "bulwark_breaker_count_window",
        count.layer(Noop),
        || 7u64,
    );
    let time = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .window(WindowKind::Time {
            length: Duration::from_secs(60),
            buckets: 10,
        })
        .build()
        .expect("breaker config");
    bench_ready_call(
        &mut group,
        "bulwark_breaker_time_window",
        time.layer(Noop),
        || 7u64,
    );
    group.finish();
}

/// The time window's cost does not grow with what it holds: one window filled with 1,000
/// calls, one with 1,000,000, then both timed the same way.
fn circuit_breaker_window_flatness(c: &mut Criterion) {
    use tower::Layer;
    use tower_bulwark::breaker::{CircuitBreakerLayer, WindowKind};

    let mut group = c.benchmark_group("breaker_time_window_holding");
    for held in [1_000u64, 1_000_000] {
        let layer = CircuitBreakerLayer::builder()
            .failure_rate(0.5)
            .window(WindowKind::Time {
                length: Duration::from_secs(3600),
                buckets: 10,
            })
            .build()
            .expect("breaker config");
        let mut service = layer.layer(Noop);
        let runtime = tower_bulwark_benches::current_thread_runtime();
        runtime.block_on(async {
            for _ in 0..held {
                ServiceExt::<u64>::ready(&mut service)
                    .await
                    .unwrap()
                    .call(1u64)
                    .await
                    .unwrap();
            }
        });
        assert!(layer.handle().snapshot().calls >= held);
        bench_ready_call(&mut group, &format!("{held}_calls"), service, || 7u64);
    }
    group.finish();
}

/// Our bulkhead with a free permit beside tower's `ConcurrencyLimit` (above) and
/// tower-resilience's bulkhead (above).
fn bulkhead(c: &mut Criterion) {
    use tower::Layer;
    use tower_bulwark::bulkhead::{Admission, BulkheadLayer};

    let mut group = c.benchmark_group("ready_call");
    for (name, admission) in [
        ("bulwark_bulkhead_reject", Admission::Reject),
        ("bulwark_bulkhead_backpressure", Admission::Backpressure),
    ] {
        let layer = BulkheadLayer::builder()
            .max_concurrent(1024)
            .max_queue(64)
            .admission(admission)
            .build()
            .expect("bulkhead config");
        bench_ready_call(&mut group, name, layer.layer(Noop), || 7u64);
    }
    group.finish();
}

/// Our retry policy on tower's `Retry`, beside tower's `Retry` + `TpsBudget` and
/// tower-resilience's retry (both above): the first attempt succeeds.
fn retry(c: &mut Criterion) {
    use tower::Layer;
    use tower_bulwark::retry::RetryPolicy;

    let mut group = c.benchmark_group("ready_call");
    let policy = RetryPolicy::builder().build().expect("retry config");
    bench_ready_call(
        &mut group,
        "bulwark_retry",
        policy.layer().layer(Noop),
        || 7u64,
    );
    group.finish();
}

/// A budget's deposit + withdraw, ours beside tower's `TpsBudget`, on one thread and with
/// two threads sharing the budget.
fn budgets(c: &mut Criterion) {
    use std::sync::Arc;
    use tower::retry::budget::{Budget, TpsBudget};
    use tower_bulwark::retry::{RatioBudget, TokenBucket};

    let mut group = c.benchmark_group("budget_deposit_withdraw");
    let ours = Arc::new(RatioBudget::new(Duration::from_secs(10), 10, 0.2).expect("budget"));
    let theirs = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    let bucket = Arc::new(TokenBucket::new(100, 0.1).expect("bucket"));
    let runtime = tower_bulwark_benches::current_thread_runtime();
    let _guard = runtime.enter();
    group.bench_function("bulwark_ratio_budget", |b| {
        b.iter(|| {
            ours.deposit();
            std::hint::black_box(ours.withdraw())
        })
    });
    group.bench_function("bulwark_token_bucket", |b| {
        b.iter(|| {
            bucket.deposit();
            std::hint::black_box(bucket.withdraw())
        })
    });
    group.bench_function("tower_tps_budget", |b| {
        b.iter(|| {
            Budget::deposit(&*theirs);
            std::hint::black_box(Budget::withdraw(&*theirs))
        })
    });
    // The deposit alone (made on every call) and the clock read both budgets make in it.
    group.bench_function("bulwark_ratio_budget_deposit", |b| {
        b.iter(|| ours.deposit())
    });
    group.bench_function("tower_tps_budget_deposit", |b| {
        b.iter(|| Budget::deposit(&*theirs))
    });
    group.bench_function("clock_read", |b| {
        b.iter(|| std::hint::black_box(tokio::time::Instant::now()))
    });
    for (name, budget) in [
        (
            "bulwark_ratio_budget_two_threads",
            ours.clone() as Arc<dyn Budget + Send + Sync>,
        ),
        (
            "tower_tps_budget_two_threads",
            theirs.clone() as Arc<dyn Budget + Send + Sync>,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let per_thread = iterations.div_ceil(2);
                let threads: Vec<_> = (0..2)
                    .map(|_| {
                        let budget = budget.clone();
                        std::thread::spawn(move || {
                            let start = tokio::time::Instant::now();
                            for _ in 0..per_thread {
                                budget.deposit();
                                std::hint::black_box(budget.withdraw());
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("thread"))
                    .max()
                    .unwrap_or_default()
            })
        });
    }
    group.finish();
}

/// The shedding layer's admission beside tower's `LoadShed` + `ConcurrencyLimit` (the
/// static limit with shedding that it replaces), and client-side throttling.
fn shedding(c: &mut Criterion) {
    use tower::limit::ConcurrencyLimit;
    use tower::load_shed::LoadShed;
    use tower::Layer;
    use tower_bulwark::shed::{
        AdaptiveThrottleLayer, Aimd, Fixed, Gradient2, MinRtt, ShedLayer, Vegas,
    };

    let mut group = c.benchmark_group("ready_call");
    bench_ready_call(
        &mut group,
        "tower_load_shed_concurrency_limit",
        LoadShed::new(ConcurrencyLimit::new(Noop, 1024)),
        || 7u64,
    );
    let fixed = ShedLayer::builder()
        .fixed(Fixed::new(1024).expect("limit"))
        .build()
        .expect("config");
    bench_ready_call(&mut group, "bulwark_shed_fixed", fixed.layer(Noop), || 7u64);
    let algorithms: [(&str, ShedLayer); 4] = [
        (
            "bulwark_shed_minrtt",
            ShedLayer::builder()
                .algorithm(MinRtt::default())
                .build()
                .expect("config"),
        ),
        (
            "bulwark_shed_vegas",
            ShedLayer::builder()
                .algorithm(Vegas::default())
                .build()
                .expect("config"),
        ),
        (
            "bulwark_shed_aimd",
            ShedLayer::builder()
                .algorithm(Aimd::default())
                .build()
                .expect("config"),
        ),
        (
            "bulwark_shed_gradient2",
            ShedLayer::builder()
                .algorithm(Gradient2::default())
                .build()
                .expect("config"),
        ),
    ];
    for (name, layer) in algorithms {
        bench_ready_call(&mut group, name, layer.layer(Noop), || 7u64);
    }
    let throttle = AdaptiveThrottleLayer::builder().build().expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_adaptive_throttle",
        throttle.layer(Noop),
        || 7u64,
    );
    group.finish();
}

/// Fault injection switched off (the kill switch) beside the no-op: what leaving the layer
/// in a production stack costs.
fn chaos(c: &mut Criterion) {
    use tower::Layer;
    use tower_bulwark::chaos::ChaosLayer;

    let mut group = c.benchmark_group("ready_call");
    let off = ChaosLayer::builder()
        .error_rate(0.5)
        .disabled()
        .build()
        .expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_chaos_disabled",
        off.layer(Noop),
        || 7u64,
    );
    let no_faults = ChaosLayer::builder().build().expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_chaos_no_faults",
        no_faults.layer(Noop),
        || 7u64,
    );
    group.finish();
}

/// HTTP requests: the core layer that turns rejections into responses.
fn http_layers(c: &mut Criterion) {
    let noop_http = || Noop.map_response(answer as fn(Request<()>) -> Response<()>);
    let mut group = c.benchmark_group("ready_call_http");
    bench_ready_call(&mut group, "noop", noop_http(), || Request::new(()));
    bench_ready_call(
        &mut group,
        "handle_rejections",
        HandleRejections::new(noop_http()),
        || Request::new(()),
    );
    // The presets' whole stacks on their happy path, beside the tower layers a hand-built
    // stack would use. The client preset's retry copies the request on every call (for a
    // retry), as tower's `Retry` does; its attempt timeout arms a timer, as `Timeout` does.
    // The preset also has a breaker and deadline propagation, which the tower stack lacks.
    let client = tower_bulwark::presets::ClientPreset::http("bench").expect("preset");
    bench_ready_call(
        &mut group,
        "client_preset",
        tower::Layer::layer(&client.layer(), noop_http()),
        || Request::new(()),
    );
    bench_ready_call(
        &mut group,
        "tower_retry_concurrency_limit_timeout",
        tower::ServiceBuilder::new()
            .retry(BudgetedRetry::new())
            .concurrency_limit(100)
            .timeout(std::time::Duration::from_secs(10))
            .service(noop_http()),
        || Request::new(()),
    );
    let server = tower_bulwark::presets::ServerPreset::http().expect("preset");
    bench_ready_call(
        &mut group,
        "server_preset",
        tower::Layer::layer(&server.layer(), noop_http()),
        || Request::new(()),
    );
    bench_ready_call(
        &mut group,
        "tower_load_shed_concurrency_limit_timeout",
        tower::ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(1000)
            .timeout(std::time::Duration::from_secs(10))
            .service(noop_http()),
        || Request::new(()),
    );
    group.finish();
}

/// The last-good fallback on its success path: a hot key (the same GET each call) with
/// the default refresh period (its answer copied once a second) and with every success
/// copied into the cache (period zero), beside the bare service.
fn fallback(c: &mut Criterion) {
    use tower::Layer;
    use tower_bulwark::fallback::FallbackLayer;

    let ok = || {
        Noop.map_response(|_: u64| {
            Response::builder()
                .header("content-type", "text/plain")
                .header("etag", "\"1\"")
                .body("hello".to_string())
                .expect("a valid response")
        })
    };
    let get = || {
        Request::get("http://inventory/items/7")
            .body(())
            .expect("a valid request")
    };
    let with_refresh = |period: Option<Duration>| {
        let builder = FallbackLayer::builder().last_good(Duration::from_secs(60), 1_000);
        let builder = match period {
            Some(period) => builder.last_good_refresh(period),
            None => builder,
        };
        builder.build().expect("fallback config")
    };
    let mut group = c.benchmark_group("ready_call_fallback");
    bench_ready_call(
        &mut group,
        "noop",
        ok().map_request(|_: Request<()>| 7u64),
        get,
    );
    for (name, period) in [
        ("bulwark_fallback_hot_key", None),
        ("bulwark_fallback_copy_every_success", Some(Duration::ZERO)),
    ] {
        let service = with_refresh(period).layer(ok().map_request(|_: Request<()>| 7u64));
        bench_ready_call(&mut group, name, service, get);
    }
    group.finish();
}

/// Deadline layers beside tower's `Timeout`, each on the request its side sees (built in
/// every iteration, for every row alike): a server receives a gRPC call with
/// `grpc-timeout`; a client sends one without.
/// An extension some layer before ours put in the request.
#[derive(Clone, Copy)]
struct ExtensionAlready;

fn deadline_layers(c: &mut Criterion) {
    use tower::timeout::Timeout;
    use tower::Layer;
    use tower_bulwark::deadline::{
        AcceptDeadlineLayer, AdaptiveTimeoutLayer, PropagateDeadlineLayer, TimeoutLayer,
    };

    let noop_http = || Noop.map_response(answer as fn(Request<()>) -> Response<()>);
    let grpc_call = |timeout: Option<&'static str>| {
        let mut request = Request::post("/pkg.Service/Method")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        request.body(()).expect("valid request")
    };
    let received = || grpc_call(Some("250m"));
    let sent = || grpc_call(None);
    let tower_timeout = || Timeout::new(noop_http(), Duration::from_secs(1));

    let mut group = c.benchmark_group("ready_call_deadline_server");
    bench_ready_call(&mut group, "noop", noop_http(), received);
    bench_ready_call(&mut group, "tower_timeout", tower_timeout(), received);
    let accept = AcceptDeadlineLayer::builder().build().expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_accept",
        accept.layer(noop_http()),
        received,
    );
    let task_only = AcceptDeadlineLayer::builder()
        .store_in_extensions(false)
        .build()
        .expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_accept_task_local_only",
        task_only.layer(noop_http()),
        received,
    );
    // A request that already carries an extension (axum's router, a tracing layer and
    // hyper put some in): `http` has allocated its extension map, and storing the deadline
    // costs one allocation, not three.
    let received_with_extension = || {
        let mut request = received();
        request.extensions_mut().insert(ExtensionAlready);
        request
    };
    bench_ready_call(
        &mut group,
        "tower_timeout_extension_present",
        tower_timeout(),
        received_with_extension,
    );
    bench_ready_call(
        &mut group,
        "bulwark_accept_extension_present",
        accept.layer(noop_http()),
        received_with_extension,
    );
    group.finish();

    let mut group = c.benchmark_group("ready_call_deadline_client");
    bench_ready_call(&mut group, "noop", noop_http(), sent);
    bench_ready_call(&mut group, "tower_timeout", tower_timeout(), sent);
    let propagate = PropagateDeadlineLayer::builder()
        .default_timeout(Duration::from_secs(1))
        .build()
        .expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_propagate",
        propagate.layer(noop_http()),
        sent,
    );
    let timeout = TimeoutLayer::new(Duration::from_secs(1)).expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_timeout",
        timeout.layer(noop_http()),
        sent,
    );
    let adaptive = AdaptiveTimeoutLayer::builder().build().expect("config");
    bench_ready_call(
        &mut group,
        "bulwark_adaptive_timeout",
        adaptive.layer(noop_http()),
        sent,
    );
    group.finish();
}

fn answer(_request: Request<()>) -> Response<()> {
    Response::new(())
}

/// The published `tower-resilience` crate: each pattern with default-like configuration,
/// configured so that it never rejects, retries or times out here.
fn tower_resilience_peers(c: &mut Criterion) {
    use tower::Layer;
    use tower_resilience::adaptive::{AdaptiveLimiterLayer, Aimd};
    use tower_resilience::bulkhead::BulkheadLayer;
    use tower_resilience::circuitbreaker::CircuitBreakerLayer;
    use tower_resilience::retry::RetryLayer;
    use tower_resilience::timelimiter::TimeLimiterLayer;

    let mut group = c.benchmark_group("ready_call");
    let breaker = CircuitBreakerLayer::builder()
        .build()
        .expect("breaker config");
    bench_ready_call(
        &mut group,
        "resilience_circuit_breaker",
        breaker.layer(Noop),
        || 7u64,
    );
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent_calls(1024)
        .build()
        .expect("bulkhead config");
    bench_ready_call(
        &mut group,
        "resilience_bulkhead",
        bulkhead.layer(Noop),
        || 7u64,
    );
    let retry = RetryLayer::<u64, u64, Infallible>::builder()
        .max_attempts(3)
        .fixed_backoff(Duration::ZERO)
        .build();
    bench_ready_call(&mut group, "resilience_retry", retry.layer(Noop), || 7u64);
    let time_limiter = TimeLimiterLayer::builder()
        .timeout_duration(Duration::from_secs(1))
        .build();
    bench_ready_call(
        &mut group,
        "resilience_time_limiter",
        time_limiter.layer(Noop),
        || 7u64,
    );
    let aimd = Aimd::builder().build().expect("AIMD config");
    bench_ready_call(
        &mut group,
        "resilience_adaptive_aimd",
        AdaptiveLimiterLayer::new(aimd).layer(Noop),
        || 7u64,
    );
    group.finish();
}

/// Our hedge layer beside tower's `Hedge` (the 95th percentile, as ours learns it) and
/// tower-resilience's (a fixed delay, the only kind it has; 2 attempts at most, as ours
/// sends 1 hedge): a call that answers before its hedge is due, so no hedge is sent; for
/// ours, with a fixed and a learned delay.
fn hedge(c: &mut Criterion) {
    use std::time::Duration;
    use tower::Layer;
    use tower_bulwark::hedge::{Every, HedgeLayer, Rejections};

    #[derive(Clone)]
    struct CloneAll;
    impl tower::hedge::Policy<u64> for CloneAll {
        fn clone_request(&self, request: &u64) -> Option<u64> {
            Some(*request)
        }
        fn can_retry(&self, _: &u64) -> bool {
            true
        }
    }

    let mut group = c.benchmark_group("ready_call");
    bench_ready_call(
        &mut group,
        "tower_hedge_p95",
        tower::hedge::Hedge::new(Noop, CloneAll, 100, 0.95, Duration::from_secs(10)),
        || 7u64,
    );
    let resilience = tower_resilience::hedge::HedgeLayer::builder()
        .delay(Duration::from_millis(10))
        .max_hedged_attempts(2)
        .build();
    bench_ready_call(
        &mut group,
        "resilience_hedge_fixed",
        resilience.layer(Noop),
        || 7u64,
    );
    for (name, learned) in [("bulwark_hedge_fixed", false), ("bulwark_hedge_p95", true)] {
        let builder = HedgeLayer::builder()
            .delay(Duration::from_millis(10))
            .may_hedge(Every)
            .overload(Rejections);
        let builder = if learned {
            builder.percentile(0.95)
        } else {
            builder
        };
        let layer = builder.build().expect("hedge config");
        bench_ready_call(&mut group, name, layer.layer(Noop), || 7u64);
    }
    group.finish();
}

criterion_group!(
    benches,
    hedge,
    tower_peers,
    tower_resilience_peers,
    circuit_breaker,
    circuit_breaker_window_flatness,
    bulkhead,
    retry,
    budgets,
    http_layers,
    fallback,
    deadline_layers,
    shedding,
    chaos
);
criterion_main!(benches);
