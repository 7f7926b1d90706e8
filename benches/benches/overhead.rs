//! Per-call overhead of each layer in the ready+call harness, beside its peers.
//!
//! `cargo bench -p tower-bulwark-benches --bench overhead` (add `-- --quick` for a short run).
//! Read the results as ratios to `noop` and to the peers in the same group.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::retry::Retry;
use tower::timeout::Timeout;
use tower::ServiceExt;
use tower_bulwark::core::testing::Noop;
use tower_bulwark::core::HandleRejections;
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
    group.finish();
}

fn answer(_request: Request<()>) -> Response<()> {
    Response::new(())
}

criterion_group!(benches, tower_peers, http_layers);
criterion_main!(benches);
